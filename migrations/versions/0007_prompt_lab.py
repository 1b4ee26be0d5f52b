"""prompt lab: version settings, candidate and canary, pinned conversations, feedback, comparisons

Existing versions get the default settings (gpt-4o-mini, the provider's temperature, 1024 output
tokens); existing conversations follow production as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 01:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('prompt_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model', sa.String(length=120), server_default='gpt-4o-mini', nullable=False))
        batch_op.add_column(sa.Column('temperature', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('max_output_tokens', sa.Integer(), server_default='1024', nullable=False))

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('candidate_prompt_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('canary_percent', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_foreign_key('fk_projects_candidate_prompt', 'prompt_versions', ['id', 'candidate_prompt_id'], ['project_id', 'id'], use_alter=True)

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prompt_version_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('model', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('arm', sa.String(length=16), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_conversations_prompt_version_id_prompt_versions'), 'prompt_versions', ['prompt_version_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rating', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('feedback', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('rated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index(batch_op.f('ix_messages_prompt_version_id'))
        # Covering: every column the per-version metrics read (app/models/chat.py).
        batch_op.create_index('ix_messages_version_created', ['prompt_version_id', 'created_at', 'role', 'status', 'conversation_id', 'rating', 'fallback', 'tokens_in', 'tokens_out', 'ttft_ms', 'total_ms'], unique=False)

    op.create_table('comparisons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('left_version_id', sa.Integer(), nullable=True),
    sa.Column('right_version_id', sa.Integer(), nullable=True),
    sa.Column('left_model', sa.String(length=120), nullable=False),
    sa.Column('right_model', sa.String(length=120), nullable=False),
    sa.Column('left_conversation_id', sa.Integer(), nullable=True),
    sa.Column('right_conversation_id', sa.Integer(), nullable=True),
    sa.Column('left_reply_id', sa.Integer(), nullable=True),
    sa.Column('right_reply_id', sa.Integer(), nullable=True),
    sa.Column('choice', sa.String(length=8), nullable=True),
    sa.Column('chosen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['left_conversation_id'], ['conversations.id'], name=op.f('fk_comparisons_left_conversation_id_conversations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['left_reply_id'], ['messages.id'], name=op.f('fk_comparisons_left_reply_id_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['left_version_id'], ['prompt_versions.id'], name=op.f('fk_comparisons_left_version_id_prompt_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_comparisons_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['right_conversation_id'], ['conversations.id'], name=op.f('fk_comparisons_right_conversation_id_conversations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['right_reply_id'], ['messages.id'], name=op.f('fk_comparisons_right_reply_id_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['right_version_id'], ['prompt_versions.id'], name=op.f('fk_comparisons_right_version_id_prompt_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comparisons'))
    )
    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.create_index('ix_comparisons_project_created', ['project_id', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.drop_index('ix_comparisons_project_created')
    op.drop_table('comparisons')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_version_created')
        batch_op.create_index(batch_op.f('ix_messages_prompt_version_id'), ['prompt_version_id'], unique=False)
        batch_op.drop_column('rated_at')
        batch_op.drop_column('feedback')
        batch_op.drop_column('rating')

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_conversations_prompt_version_id_prompt_versions'), type_='foreignkey')
        batch_op.drop_column('arm')
        batch_op.drop_column('model')
        batch_op.drop_column('prompt_version_id')

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_constraint('fk_projects_candidate_prompt', type_='foreignkey')
        batch_op.drop_column('canary_percent')
        batch_op.drop_column('candidate_prompt_id')

    with op.batch_alter_table('prompt_versions', schema=None) as batch_op:
        batch_op.drop_column('max_output_tokens')
        batch_op.drop_column('temperature')
        batch_op.drop_column('model')
