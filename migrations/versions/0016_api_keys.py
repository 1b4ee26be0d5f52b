"""API keys, project slugs and system-message policy, conversation sources

api_keys (hashed bearer keys for apps, with scope, expiry, revocation, last use, a rate and a
monthly token budget); projects.slug (the project's model name on /v1, unique per owner,
filled in from each project's name) and projects.system_policy ('append'); conversations.source
and api_key_id (who started it: NULL the owner's chat, 'api' the OpenAI-compatible endpoints).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 23:00:00.000000

"""
import re
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def _slug(name):
    # The same rule as app/projects/services.py slugify (copied: a migration must not change
    # when the app's code does).
    text = unicodedata.normalize('NFKD', name or '').encode('ascii', 'ignore').decode()
    text = re.sub(r'[^a-z0-9]+', '-', text.lower().replace("'", '')).strip('-')
    text = text[:48].strip('-')
    return text or 'project'


def upgrade():
    op.create_table(
        'api_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_used_ip', sa.String(length=64), nullable=True),
        sa.Column('rate_per_minute', sa.Integer(), nullable=True),
        sa.Column('monthly_tokens', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_api_keys_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
        sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix')),
    )
    op.create_index(op.f('ix_api_keys_user_id'), 'api_keys', ['user_id'], unique=False)
    op.create_index(op.f('ix_api_keys_project_id'), 'api_keys', ['project_id'], unique=False)

    with op.batch_alter_table('projects') as batch:
        batch.add_column(sa.Column('slug', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('system_policy', sa.String(length=16),
                                   server_default='append', nullable=False))
    conn = op.get_bind()
    taken = set()
    rows = conn.execute(sa.text('SELECT id, owner_id, name FROM projects ORDER BY id')).all()
    for project_id, owner_id, name in rows:
        base = _slug(name)
        slug, n = base, 1
        while (owner_id, slug) in taken:
            n += 1
            slug = f'{base[:44]}-{n}'
        taken.add((owner_id, slug))
        conn.execute(sa.text('UPDATE projects SET slug = :s WHERE id = :i'),
                     {'s': slug, 'i': project_id})
    with op.batch_alter_table('projects') as batch:
        batch.alter_column('slug', existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint('uq_projects_owner_slug', ['owner_id', 'slug'])

    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('source', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('api_key_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_conversations_api_key_id_api_keys'), 'api_keys',
                                 ['api_key_id'], ['id'], ondelete='SET NULL')
        batch.create_index(op.f('ix_conversations_api_key_id'), ['api_key_id'], unique=False)


def downgrade():
    with op.batch_alter_table('conversations') as batch:
        batch.drop_index(op.f('ix_conversations_api_key_id'))
        batch.drop_constraint(op.f('fk_conversations_api_key_id_api_keys'), type_='foreignkey')
        batch.drop_column('api_key_id')
        batch.drop_column('source')
    with op.batch_alter_table('projects') as batch:
        batch.drop_constraint('uq_projects_owner_slug', type_='unique')
        batch.drop_column('system_policy')
        batch.drop_column('slug')
    op.drop_index(op.f('ix_api_keys_project_id'), table_name='api_keys')
    op.drop_index(op.f('ix_api_keys_user_id'), table_name='api_keys')
    op.drop_table('api_keys')
