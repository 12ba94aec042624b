"""The learning core (needs the train extra: torch, transformers, safetensors, onnxscript).

The only package that imports torch. Modules:
- model.py: build_model(arch, config) -> DepthPointModel ("patchtsmixer" | "cnn"), ModelConfig
- train.py: TrainOptions, fit_ensemble (members), train_ensemble(holes, out_dir, opts,
  parent_dir=...) -> manifest
- heldout.py: the out-of-fold answers: cross-validation figures, review calibration, placement
- augment.py: label-keeping augmentation (current gain, no-load offset steps, noise)
- export.py: export_onnx, check_parity, write_model_folder, read_manifest, reexport_members
- served_form.py: served_form(model), the same function in layouts onnxruntime runs fast
- data.py: TrainHole, from_snapshot, synthetic, real_labelled, dataset_hash
- run.py: the `appliance train` / `appliance train-baseline` runs; card.py: the model card
- progress.py: JSON-lines progress events or a terminal bar
"""
