"""Dataset catalogues: the model and base class, the search index, the backends.

``base`` (Dataset, Page, Catalog, CatalogError, backend lookup by name),
``index`` (in-memory search), ``yaml_catalog`` and ``scicat`` (backends).
Backends are imported only when used.
"""

from .base import Catalog, CatalogError, Dataset, Page, catalog_class_from_name, slugify, valid_pid

__all__ = ["Catalog", "CatalogError", "Dataset", "Page", "catalog_class_from_name", "slugify", "valid_pid"]
