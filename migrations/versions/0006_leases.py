"""leases: reply checkpoints (messages.lease_until) and file extraction claims

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 23:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            'ix_messages_streaming_lease',
            ['lease_until'],
            unique=False,
            postgresql_where=sa.text("status = 'streaming'"),
            sqlite_where=sa.text("status = 'streaming'"),
        )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text_claimed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('text_claimed_at')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_streaming_lease', postgresql_where=sa.text("status = 'streaming'"), sqlite_where=sa.text("status = 'streaming'"))
        batch_op.drop_column('lease_until')
