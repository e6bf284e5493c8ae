"""The sketch synthesizer S: SOLOv2 instance segmentation (Wang et al. 2020) in plain PyTorch.

S predicts the uvula, pharyngeal wall, tonsils and tongue of a throat photograph; the contours
of its confident masks form the synthesized sketch that Sketch2MedI trains on, and the same
masks judge the 'originality' metric (per-class DICE).
"""
