"""OpenAI file copies as a job: files.sync_claimed_at (the copy job's lease)

The copy to OpenAI Files moved from the upload request to a ``copy`` job on the queue
(app/files/copies.py); ``sync_status`` gains ``pending`` (a string column: no change).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('files') as batch:
        batch.add_column(sa.Column('sync_claimed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    # A copy still pending goes back to what a retry offers.
    op.execute("UPDATE files SET sync_status = 'failed', sync_error = 'The copy was not made.' "
               "WHERE sync_status = 'pending'")
    with op.batch_alter_table('files') as batch:
        batch.drop_column('sync_claimed_at')
