"""Fixtures for tests that talk to the fake OpenAI/Cohere server (see ``fake_server``).

``fake_provider`` is one started server per module; ``provider`` is that server reset for one
test. Other test folders get the same fixtures by adding this import to their ``conftest.py``.
"""

from tests.providers.fake_server import fake_provider, provider

__all__ = ["fake_provider", "provider"]
