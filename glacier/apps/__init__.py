"""One function per command: typed settings and a run directory in, outputs written.

``simulate.run(job, out_dir)``, ``train.run(job, out_dir)``, ``invert.run(job, out_dir)`` do
the whole job of ``glacier-simulate``, ``glacier-train`` and ``glacier-invert`` (progress,
resume, devices, outputs, summary line) and return the exit status; they take the jobs that
``glacier.config.build`` makes from a config, or that a script builds by hand, and never see
Hydra (the pattern of flax's ``train_and_evaluate(config, workdir)``).
"""
