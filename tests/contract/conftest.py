"""The hosted adapters run the same contract tests as their local counterparts, against the
fake OpenAI/Cohere server (a real HTTP server on 127.0.0.1 speaking their wire formats)."""

from tests.providers.fake_server import fake_provider, provider

__all__ = ["fake_provider", "provider"]
