"""The per-query QIDO-RS facade's attribute table, matching and DICOM JSON datasets (api/routes/dicomweb.py serves them)."""
