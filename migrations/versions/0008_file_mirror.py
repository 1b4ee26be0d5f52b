"""file mirror: what OpenAI answered about each file's copy (its file object)

Existing rows get nulls: a file copied before this revision keeps its openai_file_id, and the
API shows its other OpenAI fields as null (OpenAI's answer was not kept then).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('openai_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('openai_created_at', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('openai_expires_at', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('openai_purpose', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('openai_status', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('openai_status')
        batch_op.drop_column('openai_purpose')
        batch_op.drop_column('openai_expires_at')
        batch_op.drop_column('openai_created_at')
        batch_op.drop_column('openai_bytes')
