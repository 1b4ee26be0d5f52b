"""Output format per version, named labels, the reply's format check

prompt_versions.output_format ('text' for every existing version) and output_schema;
messages.format_valid and format_error (null: not checked), format_valid joining the covering
index the per-version metrics read; prompt_labels (a named pointer at a version, unique per
project, on the project's own versions).

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-07 17:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_COVERING = ['prompt_version_id', 'created_at', 'role', 'status', 'conversation_id', 'rating',
             'fallback', 'tokens_in', 'tokens_out', 'ttft_ms', 'total_ms']


def upgrade():
    with op.batch_alter_table('prompt_versions') as batch:
        batch.add_column(sa.Column('output_format', sa.String(length=16), server_default='text',
                                   nullable=False))
        batch.add_column(sa.Column('output_schema', sa.JSON(), nullable=True))

    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('format_valid', sa.Boolean(), nullable=True))
        batch.add_column(sa.Column('format_error', sa.String(length=300), nullable=True))
        batch.drop_index('ix_messages_version_created')
        batch.create_index('ix_messages_version_created', [*_COVERING, 'format_valid'],
                           unique=False)

    op.create_table(
        'prompt_labels',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_prompt_labels_project_id_projects'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id', 'version_id'],
                                ['prompt_versions.project_id', 'prompt_versions.id'],
                                name='fk_prompt_labels_version', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_labels')),
        sa.UniqueConstraint('project_id', 'name', name='uq_prompt_labels_project_name'),
    )


def downgrade():
    op.drop_table('prompt_labels')
    with op.batch_alter_table('messages') as batch:
        batch.drop_index('ix_messages_version_created')
        batch.create_index('ix_messages_version_created', _COVERING, unique=False)
        batch.drop_column('format_error')
        batch.drop_column('format_valid')
    with op.batch_alter_table('prompt_versions') as batch:
        batch.drop_column('output_schema')
        batch.drop_column('output_format')
