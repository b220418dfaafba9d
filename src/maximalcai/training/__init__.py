"""DPO on a LoRA adapter: TRL + PEFT in fp32 on a CPU, Unsloth 4-bit QLoRA on a GPU (same TRL trainer).

``trainer.backend`` picks the path (``maximalcai.hardware.resolve_training_backend``): ``auto`` uses Unsloth
when CUDA and the package are present, TRL otherwise. Unsloth and bitsandbytes are imported only inside the
GPU path; asking for them without CUDA stops the workflow at start (``maximalcai.hardware.check_hardware``).
"""
