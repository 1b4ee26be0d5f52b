"""Every blueprint, nested once at import time.

Flask forbids nesting a blueprint into a parent after the parent was registered on an app, and
tests build many apps; so the JSON blueprints are nested here, when this module is first imported.
"""

from app import api
from app.auth import api as auth_api
from app.auth import routes as auth_routes
from app.chat import api as chat_api
from app.compare import api as compare_api
from app.compare import routes as compare_routes
from app.compat import api as compat_api
from app.files import api as files_api
from app.files import routes as files_routes
from app.keys import api as keys_api
from app.keys import routes as keys_routes
from app.projects import api as projects_api
from app.projects import routes as projects_routes
from app.prompts import api as prompts_api
from app.prompts import routes as prompts_routes
from app.share import api as share_api
from app.share import routes as share_routes

api.bp.register_blueprint(auth_api.bp)
api.bp.register_blueprint(auth_api.usage_bp)
api.bp.register_blueprint(projects_api.bp)
api.bp.register_blueprint(chat_api.bp)
api.bp.register_blueprint(compare_api.bp)
api.bp.register_blueprint(keys_api.bp)
api.bp.register_blueprint(prompts_api.models_bp)
projects_api.bp.register_blueprint(prompts_api.bp)
projects_api.bp.register_blueprint(files_api.bp)
projects_api.bp.register_blueprint(share_api.bp)

ALL = (
    auth_routes.bp,
    projects_routes.bp,
    prompts_routes.bp,
    files_routes.bp,
    compare_routes.bp,
    keys_routes.bp,
    share_routes.bp,
    share_routes.public,
    api.bp,
    compat_api.bp,
)
