"""Fine-tuning the chain's LLM on what the project knows is right: eval sets and feedback.

- :mod:`.datasets`: SFT examples and DPO pairs in the chain's own prompt (its retriever's context),
  split leak-free by question and source, stored as ``finetune_sft`` / ``finetune_dpo``;
- :mod:`.device`: the training device and what follows from it (precision, batch, packing), in one place;
- :mod:`.train`: TRL ``SFTTrainer`` / ``DPOTrainer`` with LoRA, and merging the adapter;
- :mod:`.register`: the merged model (and adapter) registered as ``rag_llm`` with its lineage;
- :mod:`.job`: ``finetune_job`` end to end (build → train → merge → register).

The chain answers with a registered version through ``llm_model=models:/rag_llm/<version>`` (or an
alias), on the fast llama.cpp backend (the merged model converted to GGUF once).
"""
