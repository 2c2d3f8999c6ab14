"""Synthetic RSNA-layout dataset: anatomy, rendering, DICOM writing (see docs/synthetic.md).

    from willis.synth.dataset import synthesize           # the whole dataset
    from willis.synth.dicom_writer import write_series    # one volume -> one DICOM series
    from willis.synth.geometry import geometry_for, sample_world
"""
