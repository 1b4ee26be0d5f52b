"""usage days: what each user's model calls cost, per UTC day, project and model

The ledger the spending budgets read (app/usage.py). It starts empty: replies stored before
this migration are not charged, so every user starts the current day and month with their full
budget.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'usage_days',
        sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('project_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('model', sa.String(length=120), nullable=False),
        sa.Column('shard', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('calls', sa.Integer(), nullable=False),
        sa.Column('tokens_in', sa.BigInteger(), nullable=False),
        sa.Column('tokens_out', sa.BigInteger(), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_usage_days_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'day', 'project_id', 'model', 'shard', name=op.f('pk_usage_days')),
    )


def downgrade():
    op.drop_table('usage_days')
