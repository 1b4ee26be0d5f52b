"""reply error kind: why a reply ended without its full text, for the words the page shows

Existing rows get null: the page falls back to a general reason for them (and keeps their
technical detail under "Details").

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_kind', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('error_kind')
