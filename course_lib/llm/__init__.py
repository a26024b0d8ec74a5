"""Large models in miniature: a tiny transformer, LoRA adapters and federated fine-tuning.

- :mod:`~course_lib.llm.model`      a character-level GPT (``TinyLM``) and GPT-2-shaped weights
- :mod:`~course_lib.llm.data`       its generated text records and the character alphabet
- :mod:`~course_lib.llm.lora`       low-rank adapters on the attention layers
- :mod:`~course_lib.llm.federated`  federated fine-tuning where only encrypted adapters travel
"""
