"""Share links: a project's public chat page, and the visitors' conversations

share_links (a project's public chat page /s/<token>: passcode, expiry, revocation, the origins
allowed to embed it, a monthly token budget); conversations.share_link_id and visitor (a
visitor's conversation on a link: source 'share', the visitor's random id).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'share_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(length=32), nullable=False),
        sa.Column('passcode_hash', sa.String(length=255), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('allowed_origins', sa.Text(), nullable=True),
        sa.Column('monthly_tokens', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_share_links_project_id_projects'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_share_links')),
        sa.UniqueConstraint('token', name=op.f('uq_share_links_token')),
    )
    op.create_index(op.f('ix_share_links_project_id'), 'share_links', ['project_id'],
                    unique=False)

    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('share_link_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('visitor', sa.String(length=32), nullable=True))
        batch.create_foreign_key(op.f('fk_conversations_share_link_id_share_links'),
                                 'share_links', ['share_link_id'], ['id'], ondelete='SET NULL')
        batch.create_index(op.f('ix_conversations_share_link_id'), ['share_link_id'],
                           unique=False)


def downgrade():
    with op.batch_alter_table('conversations') as batch:
        batch.drop_index(op.f('ix_conversations_share_link_id'))
        batch.drop_constraint(op.f('fk_conversations_share_link_id_share_links'),
                              type_='foreignkey')
        batch.drop_column('visitor')
        batch.drop_column('share_link_id')
    op.drop_index(op.f('ix_share_links_project_id'), table_name='share_links')
    op.drop_table('share_links')
