"""Synthetic RSNA-layout dataset: anatomy, rendering, DICOM writing (see docs/synthetic.md).

    from willis.synth.dataset import synthesize           # the whole dataset
    from willis.synth.dicom_writer import write_series    # one volume -> one DICOM series
    from willis.synth.geometry import geometry_for, sample_world
    from willis.synth.series import render_series         # one series' volume, before it is written
    from willis.synth.profiles import DEFAULT, HELDOUT     # the generator's nuisance ranges
"""
