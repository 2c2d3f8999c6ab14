"""Training: losses, class-balanced sampler, device-side augmentation, data loading, the loop, inference.

    from willis.train.loop import train_family          # the `train` stage
    from willis.train.infer import logits_for, infer_arrays   # evaluate / predict
"""
