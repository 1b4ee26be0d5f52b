"""conversation titles as a job: title_state, title_claimed_at, title_attempts

The model-written title moved from the page's request to a ``title`` job on the queue
(app/chat/titles.py). Conversations from before stay NULL: no job titles them (the page had
asked, or never will).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('title_state', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('title_claimed_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column('title_attempts', sa.SmallInteger(), server_default=sa.text('0'), nullable=False)
        )
        batch.create_index(op.f('ix_conversations_title_state'), ['title_state'])


def downgrade():
    with op.batch_alter_table('conversations') as batch:
        batch.drop_index(op.f('ix_conversations_title_state'))
        batch.drop_column('title_attempts')
        batch.drop_column('title_claimed_at')
        batch.drop_column('title_state')
