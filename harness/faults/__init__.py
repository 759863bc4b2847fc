"""Named fault operations usable from any test (HTTP via the mock OpenAI service; TCP and process faults follow)."""

from harness.faults.mock_openai import MockOpenAIControl

__all__ = ["MockOpenAIControl"]
