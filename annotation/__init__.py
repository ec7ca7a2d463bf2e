"""Annotation services: everything between the engine and the screen.

Every service takes a SQLAlchemy ``session`` first and never commits: the caller (a button press, a CLI command)
owns the transaction (``db.engine.session_scope``). Bad input raises a ``ValueError`` subclass from
:mod:`annotation.errors` before anything is written. Every state change appends to the audit log.

Modules:
- ``projects``   create a project (model, scale, bank size N, k picks, raters_per_image M, ensemble_size m, ...)
- ``accounts``   raters / analysts / admins with scrypt-hashed secrets
- ``exclusions`` analysts' exclusions of raters (honoured by aggregation, ensembles and exports)
- ``images``     import LR images (PNG, JPEG, folder, zip, uploads, built-in MNIST evaluation rows): validated,
                 de-duplicated by pixel content
- ``banks``      bank generation as a resumable job (``run_bank_jobs``); a bank is visible only once complete;
                 the domain's reader reads every sample (the bank's evidence)
- ``tasks``      ``next_task`` / ``submit`` / ``revise`` / ``skip``: leases, slots, gold items, idempotent submits
- ``aggregate``  pure: approval counts, Borda, Plackett-Luce, most-voted order, consensus reading and its share
- ``positions``  pure: readings aligned per position (plates), consensus string, distributions, alpha over positions
- ``agreement``  pure: Krippendorff's alpha on picks and readings, pairwise Jaccard, rater vs consensus, gold
                 accuracy, median time per task
- ``analysis``   the store's votes as plain records (exclusions honoured) and the project's aggregates
- ``consensus``  the calibrated consensus per image (posterior, probability, resolved) and adaptive overlap's flag
- ``uncertainty`` the bank's per-pixel std and principal components as PNGs (analysts only)
- ``ensembles``  pixel mean of the m most-voted samples through the engine, checked and stored
- ``exports``    votes, per-image summary, ensembles zip; CSV / JSON / Parquet with provenance
- ``audit``      the append-only audit log
- ``demo``       the first start's demo projects (ambiguous digits, ambiguous plates) and their banks
- ``logconfig``  how the entry points configure logging (timestamps, ``--log-level``); modules only log
- ``python -m annotation``  init, create-project, import, generate, ensembles, export (any ``--db-url``)

Lookups raise :class:`~annotation.errors.NotFound`, one "get or raise" per entity: ``projects.get_project``,
``images.get_image``, ``accounts.get_rater`` / ``rater_by_name``.

Layering (docs/design.md): ``app.py`` / ``ui`` -> ``annotation`` -> ``db``; ``annotation`` -> ``sr_engine``.
"""
