"""The networks: the flow pseudoinverse (:mod:`.flow`), the kernel-space DDPM (:mod:`.kernel_diffusion`) and the
benchmark's regression baseline (:mod:`.regression`)."""
