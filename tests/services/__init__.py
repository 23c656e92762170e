"""The real services for tests: the classes from ``devtools.services`` (shared with ``bench/``) plus fixtures.

``tests/conftest.py`` imports the fixtures from ``tests/services/{postgres,s3,mlflow_server}.py``;
tests import the classes from here or from ``devtools.services``::

    from tests.services import MlflowServer, MotoS3Server, PostgresDatabase
"""

from devtools.services import *  # noqa: F403
from devtools.services import __all__ as _shared
from tests.services.postgres import require_postgres

__all__ = [*_shared, "require_postgres"]
