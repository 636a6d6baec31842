"""labelstack's HIPAA policy pack (CrossGuard). Importing this package never starts the
analyzer: only ``policies/__main__.py`` builds the ``PolicyPack``."""
