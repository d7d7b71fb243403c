"""genzoo serve: an OpenAI-compatible API and a web app over the zoo and the store (FastAPI on uvicorn)."""
