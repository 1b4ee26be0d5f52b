"""Share links: a project's public chat page (``/s/<token>``) for visitors without an account,
each with a signed visitor cookie of their own, limited per visitor, per link and by a monthly
token budget, embeddable by the origins the owner names. The owner creates and revokes links
(``/projects/<id>/share``, ``/api/projects/<id>/share-links``) and reads the visitors'
conversations (source ``share``) in the project. Above chat and projects; nothing imports it
but ``blueprints``."""
