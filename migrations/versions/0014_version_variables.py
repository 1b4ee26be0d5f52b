"""template variables: prompt_versions.variables and .templated, messages.variables,
conversations.variables

A version declares its variables (a JSON list; existing rows get an empty one) and says
whether its text is a template (``templated``; existing rows false: they are sent as they
are, so a prompt that already holds ``{{`` keeps working). A reply keeps the values its
instructions were rendered with, a conversation the values set for it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 17:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('prompt_versions') as batch:
        batch.add_column(
            sa.Column('variables', sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch.add_column(
            sa.Column('templated', sa.Boolean(), server_default=sa.text('false'), nullable=False)
        )
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('variables', sa.JSON(), nullable=True))
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('variables', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('variables')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('variables')
    with op.batch_alter_table('prompt_versions') as batch:
        batch.drop_column('templated')
        batch.drop_column('variables')
