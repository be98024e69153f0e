"""Self-supervised methods by name (see ``list_methods()``)."""
