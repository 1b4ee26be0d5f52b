"""Where project files' bytes live: one small interface (``base.py``), the local directory as the
embedded default (``local.py``) and any S3-compatible object store (``s3.py``), chosen once from
``STORAGE_URL`` by the registry (``registry.py``). No Flask and no database below the registry:
the files feature decides, a store only keeps bytes."""
