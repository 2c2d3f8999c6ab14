"""Training: losses, heat-map targets, class-balanced sampler, device-side augmentation, data loading, the loop.

    from willis.train.loop import train_family          # the `train` stage

Inference from a checkpoint (evaluate, predict) is ``willis.models.infer``; the logits table it and
the loop write is ``willis.models.logits``.
"""
