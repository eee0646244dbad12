"""OpenAI and OpenAI-compatible servers (Ollama, vLLM, llama.cpp, LM Studio) for Sigil.

Importing this package is cheap: the ``openai`` SDK is imported only when a call is made, so
``sigil --help`` stays fast with the plugin installed.
"""

__version__ = "0.1.0"
