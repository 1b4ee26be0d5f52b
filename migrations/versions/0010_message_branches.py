"""message branches: each message's parent on its branch, and the branch a conversation shows

Existing conversations become trees the way they read today: a user's message follows the
message before it, and a reply belongs to the user's message before it, so a reply that was
regenerated becomes a sibling of the earlier one. Each conversation shows its newest message's
branch, as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_parent_id'), ['parent_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_messages_parent_id_messages'), 'messages', ['parent_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leaf_id', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE messages SET parent_id = (SELECT MAX(m2.id) FROM messages m2 "
        "WHERE m2.conversation_id = messages.conversation_id AND m2.id < messages.id) "
        "WHERE role = 'user'"
    )
    op.execute(
        "UPDATE messages SET parent_id = (SELECT MAX(m2.id) FROM messages m2 "
        "WHERE m2.conversation_id = messages.conversation_id AND m2.id < messages.id "
        "AND m2.role = 'user') WHERE role = 'assistant'"
    )
    op.execute(
        "UPDATE conversations SET leaf_id = (SELECT MAX(m.id) FROM messages m "
        "WHERE m.conversation_id = conversations.id)"
    )


def downgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('leaf_id')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_parent_id_messages'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_messages_parent_id'))
        batch_op.drop_column('parent_id')
