"""Making exports: a model folder to a self-describing, parity-checked folder for one export target.

The folder holds the graph (``model.onnx``, ``model.int8.onnx`` or OpenVINO's ``model.xml`` + ``model.bin``), the
tokenizer files, ``config.json`` (labels) and the source's ``toxdistill.json`` (metrics, calibration, max length)
with an ``export`` record added: how it was made, from which weights, and how closely it matches them.

One module per job: ``naming`` (target → folder), ``graph`` (torch.onnx export and ONNX Runtime's fusion),
``quantize`` (ONNX Runtime's dynamic int8, NNCF's static int8), ``parity`` (the texts and the gates), ``folder``
(the record, writing and freshness) and ``job`` (``ExportJob`` and ``export_model``, which runs the steps).
Reading an export folder is ``toxdistill.inference``'s (``export_record``), a layer below.
"""
