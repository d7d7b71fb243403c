"""Local Hugging Face folders loaded into genzoo's own implementations (Llama/Mistral/Qwen2, BERT, T5)."""
