"""The technique contract: what a technique plugin registers, and what its methods are told.

A training cell has three parts, and two more that the schedule has unless a technique provides
them. For each part a technique may **provide** it (build it from nothing) or **wrap** it (take what
another technique provided and return a changed one):

=========  ===========================  ==========================================
part       provide it with              wrap it with
=========  ===========================  ==========================================
model      ``build_model(ctx)``         ``wrap_model(model, ctx)``
loss       ``build_loss(ctx)``          ``wrap_loss(loss, ctx)``
schedule   ``build_schedule(ctx)``      ``wrap_schedule(schedule, ctx)``
optimizer  ``build_optimizer(ctx)``     ``wrap_optimizer(make_optimizer, ctx)``
lr curve   ``build_lr_curve(ctx)``      (provided only)
=========  ===========================  ==========================================

A technique may also act while the cell trains, at the events of :mod:`aeframe.contract.events`
(after the backward pass, after the optimizer's step, at a phase's start and end, around evaluation).

How the parts of several techniques combine (``-t a+b+c``) is :mod:`aeframe.planning.composition`'s job.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from aeframe.contract.events import EVENT_METHODS
from aeframe.contract.params import Param

if TYPE_CHECKING:
    import torch
    from torch import nn

    from aeframe.contract.events import TrainingState
    from aeframe.contract.schedule import LrCurve, MakeOptimizer, Schedule

#: A reconstruction loss: ``loss(output, target)`` -> a scalar tensor, both (N, C, H, W) in [0, 1].
Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]

PARTS = ("model", "loss", "schedule")
# Parts the schedule has (make_optimizer, lr_at and beta1_at) unless a technique provides them.
OPTIMIZER, LR_CURVE = "optimizer", "lr_curve"
PART_METHODS = (*(f"{verb}_{part}" for part in (*PARTS, OPTIMIZER) for verb in ("build", "wrap")), f"build_{LR_CURVE}")
# learning_rates' key for every phase of whatever schedule the cell trains by.
ALL_PHASES = "*"

# The parameter the core adds to every technique that declares learning rates: the row's own rate.
LR_PARAM = "lr"
OWN_RATE = "own"


@dataclass(frozen=True)
class Preparation:
    """Work a technique did for a cell outside its training budget, as the cell's record keeps it.

    what:    what was done, as a reader of the table should see it ("pretrained the ResNet34 body
             as a classifier of shapes (20,000 images, 2 epochs)").
    seconds: what it cost when it was done; None where that is not known.
    reused:  True when it was done earlier (kept in the cache) and this cell reused it.
    """

    what: str
    seconds: float | None
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "seconds": self.seconds, "reused": self.reused}


@dataclass(frozen=True)
class CellContext:
    """What a technique's hooks know about the cell they are building for.

    shape:       (C, H, W) of the dataset's images (the model's input and output at full size).
    dataset:     the dataset's name, e.g. "fashion-mnist" (for per-dataset settings such as a learning rate).
    dataset_spec: the dataset as ``-d`` takes it, parameters included (for ``load_dataset``).
    num_classes: how many labels the dataset has.
    params:      the typed parameters of the technique being called (each technique sees its own).
    seed:        the cell's seed (already applied to torch's generators before the model is built).
    device:      where training runs; the core moves every part built or wrapped to it.
    data_dir:    the data directory.
    cache_dir:   where plugins may keep files they derive (e.g. weights they trained), for reuse.
    load_dataset: loads another registered dataset from its ``-d`` text (e.g. ``"shapes[train=500]"``)
                 into memory as an :class:`aeframe.ImageData`; raises :class:`aeframe.DatasetUnavailable`
                 when it cannot be had (an unknown name included).
    preparations: what :meth:`prepared_outside_budget` was told for this cell, in order.
    inspecting:  True when the model is built only to be looked at, at planning, on PyTorch's meta device
                 (shapes, no values) for :meth:`Technique.check_model`: a ``build_model`` may then skip
                 loading or deriving weights, which would be thrown away.
    """

    shape: tuple[int, int, int]
    dataset: str
    num_classes: int
    seed: int
    device: torch.device
    data_dir: Path
    cache_dir: Path
    load_dataset: Callable[[str], Any]
    dataset_spec: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    # Shared by the contexts each technique of a composition gets (dataclasses.replace keeps the list).
    preparations: list[Preparation] = field(default_factory=list)
    inspecting: bool = False

    def prepared_outside_budget(self, what: str, seconds: float | None, reused: bool = False) -> None:
        """Tell aeframe about work done for this cell outside its training budget (pretraining an
        encoder, say): the table shows its cost in the "Outside Budget" column and names it under
        the table, so that a row is not read as cheaper than it was.

        Args:
            what: What was done, as a reader of the table should see it ("pretrained the ResNet34 body
                as a classifier of shapes (20,000 images, 2 epochs)").
            seconds: Its cost in seconds when it was done; None where that is not known.
            reused: True when it was done earlier and taken from a cache, so that this cell reused it.
        """
        self.preparations.append(Preparation(what, None if seconds is None else float(seconds), reused))

    @contextmanager
    def deriving(self, path: Path, unwritable: Callable[[OSError], None] | None = None) -> Iterator[bool]:
        """Hold the cache's lock for the file ``path`` while deriving it (training weights to keep there).

        Processes sharing the cache (runs side by side, an executor's workers) then derive it one at a
        time: the first does the work, the others wait and, inside the block, should look for the file
        again before doing it themselves. The folder is made first, so an unwritable cache fails before
        the work, not after it. The kernel drops the lock when a process dies.

        Args:
            path: The file in the cache being derived. The lock is the file ``<name>.lock`` beside it, and
                the folder that holds both is made if missing.
            unwritable: Called with the error where the cache cannot hold the lock file (a full disk, a
                read-only folder); the block then runs without the lock, to derive the file for this run
                only. None (the default): that error is raised.

        Yields:
            True once the lock is held; False when it could not be taken and ``unwritable`` was told. The
                lock is released when the ``with`` block ends.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(path.with_name(f"{path.name}.lock"), "a")
        except OSError as exc:
            if unwritable is None:
                raise
            unwritable(exc)
            yield False
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield True


class TechniqueUnavailable(Exception):
    """Raised by a technique that cannot run here (e.g. pretrained weights missing offline).

    The cell is stored as skipped with this message, which must say what to put where (or which
    parameter gives an alternative), and the run goes on.
    """


@dataclass(frozen=True)
class PeakRate:
    """A peak learning rate a technique declares for one phase: one value for every dataset, with
    exceptions for named datasets.

    A value is one rate, or a tuple of rates, one per parameter group of the phase.
    """

    default: float | tuple[float, ...]
    datasets: Mapping[str, float | tuple[float, ...]] = field(default_factory=dict)

    def on(self, dataset: str) -> float | tuple[float, ...]:
        """The rate for ``dataset`` (its name as ``-d`` takes it, without parameters).

        Args:
            dataset: The dataset's name as ``-d`` takes it, without parameters (``"fashion-mnist"``).

        Returns:
            The rate named for that dataset in :attr:`datasets`, else :attr:`default`: one rate, or a tuple
                of rates, one per parameter group of the phase.
        """
        return self.datasets.get(dataset, self.default)

    def values(self) -> list[float | tuple[float, ...]]:
        """Every rate this declares, for checking them all.

        Returns:
            The rate :attr:`default` first, then that of each dataset in :attr:`datasets`, in their order;
                each one rate or a tuple of rates, one per parameter group.
        """
        return [self.default, *self.datasets.values()]


@dataclass(frozen=True)
class RelativeRate:
    """A peak learning rate declared relative to the one the phase would have without this technique
    (the study's, or another technique's): ``factor`` times it. Factors from several techniques of a
    combination multiply, so their order does not matter; an absolute rate (a number or a
    :class:`PeakRate`) declared by another technique, or its ``lr=``, is what they multiply.

    An optimizer that wants other rates than AdamW's declares one: SGD's "about ten times AdamW's"
    is ``learning_rates = {"*": RelativeRate(10)}``, which keeps each phase's ratio to the others.
    """

    factor: float

    def values(self) -> list[float]:
        """The factor, for checking it as rates are checked.

        Returns:
            ``[factor]``.
        """
        return [self.factor]


class Technique:
    """Base class for techniques. Set the attributes, then define any of the six part methods below.

    name:           what users type after ``-t`` (lowercase, dashes).
    title:          the row name in tables, e.g. "Pixel Shuffle".
    description:    one line for ``aeframe list techniques`` (default: the first line of the class's docstring).
    params:         the declared ``-t name[key=value]`` parameters (:class:`aeframe.Param`).
    base:           the technique whose parts fill in what this one does not provide; None (the
                    default) means the reference technique (the study's Baseline), so a technique
                    that only wraps a part needs no base.
    reference:      True for the one technique the others are compared with in the report's paired
                    tests (the study's Baseline); only its cells alone and at default parameters count.
    in_study:       True for a technique of the study aeframe reproduces ("Applying Modern Best
                    Practices to Autoencoders", 2020). Each cell records whether every technique of its
                    combination says so, and the report gives the rows that train any technique without
                    it a table of their own, "Beyond the study", beside the reference row. False (the
                    default) for every other technique: a plugin's is beyond the study.
    learning_rates: phase name (or ``"*"`` for every phase) -> the peak learning rate this technique
                    trains that phase with: a number (or one per parameter group), a :class:`PeakRate`
                    that differs by dataset, or a :class:`RelativeRate` (a factor of the rate the phase
                    would have otherwise). An absolute rate replaces the schedule's own for that phase,
                    whichever technique provides the schedule. A technique that declares rates accepts
                    the parameter ``lr`` too (``-t name[lr=3e-4]``): the rate for this row instead.
    cuda_graphs:    True when this technique's parts do the same tensor work at every training step:
                    no Python-side state that changes between steps (a step counter, a random choice
                    made in Python), no host synchronisation (``.item()``, printing a tensor), no
                    shape that changes within a phase. On a GPU such a step may then be captured in a
                    CUDA graph and replayed, which runs none of the step's Python again. False (the
                    default): this technique's cells step eagerly unless ``--cuda-graphs`` is given,
                    and say why. A combination is captured only where every member says True.

    Event methods (``on_after_step`` and the others of :mod:`aeframe.contract.events`) act while the
    cell trains. A technique that defines any gets a shallow copy of itself per cell (``copy.copy``):
    attributes its event methods set (an average of the weights, a count) are that cell's own.

    Registration is strict: a method named ``build_*``, ``wrap_*`` or ``on_*`` that is not one of the part
    or event methods, an attribute close to a contract name (``titel``), or a technique that provides,
    wraps, declares and acts on nothing is refused when the plugin loads, naming the plugin.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    params: Sequence[Param] = ()
    base: str | None = None
    reference: bool = False
    in_study: bool = False
    learning_rates: Mapping[str, float | tuple[float, ...] | PeakRate | RelativeRate] = MappingProxyType({})
    cuda_graphs: bool = False

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise ``ValueError`` for parameter values that are fine one by one but not together (e.g.
        two lists of different lengths); the user sees the message before anything runs.

        Args:
            params: The typed value of every parameter :meth:`accepted_params` lists, by name: the given
                ones parsed, the others at their defaults.

        Raises:
            ValueError: When the values cannot work together; its message is shown, naming the technique.
        """

    def check_shape(self, params: dict[str, Any], shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` when these parameters cannot work on images of ``shape`` (C, H, W), e.g. a
        size larger than the images. Called at planning for each dataset of the run, from the dataset's
        ``shape(params)`` (nothing is loaded); the user sees the message, naming the technique and the
        dataset, before anything runs.

        Args:
            params: The technique's typed parameter values by name, as :meth:`check_params` gets them.
            shape: The dataset's images as (C, H, W): channels, height and width in pixels.

        Raises:
            ValueError: When the parameters cannot work on images of this shape.
        """

    def check_model(self, model: nn.Module, ctx: CellContext) -> None:
        """Raise ``ValueError`` when this technique cannot work with the model its combination trains
        (another technique's model, say, that lacks what this one changes). Called at planning for each
        dataset of the run, once per combination that lists this technique, so that the user sees the
        message, naming this technique and the model's provider, before anything runs.

        The model is built as the cell would build it (provider, then the model wrappers), but on
        PyTorch's meta device: its tensors have shapes and no values, so running it tells the shape of
        its output and nothing more, at no cost. ``ctx.inspecting`` is True while it is built. A model
        that cannot be built or run there (a provider that needs data, an operation without a meta
        kernel: ``NotImplementedError``) is not checked here; the cell then reports what fails.

        Args:
            model: The combination's model, on the meta device, in training mode. Changing it is harmless:
                it is thrown away.
            ctx: The cell's context as at planning (``ctx.shape`` the dataset's images, ``ctx.params`` this
                technique's parameters, ``ctx.device`` the meta device, no data).

        Raises:
            ValueError: When the technique cannot work with this model; its message says why.
        """

    def stand_in(self, params: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        """The parameters of an offline stand-in for ``params``, and one sentence on what differs.

        Asked by ``aeframe bench --stand-ins`` after a cell of this technique was skipped as unable
        to run here (:class:`TechniqueUnavailable`: pretrained weights that cannot be had, say). The
        returned parameters (only those that change) must run without what was missing; the row is
        marked as a stand-in and the sentence printed under its table. None (the default): no
        stand-in, the cell stays skipped.

        Args:
            params: The typed parameter values of the skipped cell's technique, by name.

        Returns:
            A pair: the parameters that change, by name, and one sentence on what differs from the row
                stood in for; or None for no stand-in.
        """
        return None

    # The six part methods. A technique defines those it contributes; one left as declared here means
    # the technique does not provide (or wrap) that part. Declared, not looked up by name, so that an
    # editor and a type checker see them and their signatures.

    def build_model(self, ctx: CellContext) -> nn.Module:
        """Provide the model: an ``nn.Module`` that maps a batch of images (N, *ctx.shape) in [0, 1] to its
        reconstruction of the same shape, or to an :class:`aeframe.ModelOutput` with loss terms of its own.

        Args:
            ctx: What is known about the cell being built: the images' shape, the dataset, this technique's
                parameters, the seed (already applied), the device and the cache.

        Returns:
            The model; the core moves it to the cell's device.
        """
        raise NotImplementedError(f"technique {self.name!r} does not provide the model")

    def wrap_model(self, model: nn.Module, ctx: CellContext) -> nn.Module:
        """Wrap the model another technique provided: return a model that contains ``model``.

        Args:
            model: The model another technique provided (or wrapped before this one), already on the cell's
                device.
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            A model that contains ``model`` among its modules (one that does not is refused); the core moves
                it to the cell's device.
        """
        raise NotImplementedError(f"technique {self.name!r} does not wrap the model")

    def build_loss(self, ctx: CellContext) -> Loss:
        """Provide the reconstruction loss: ``loss(output, target)`` -> scalar tensor (an ``nn.Module``
        with parameters or buffers is moved to the cell's device).

        Args:
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            The loss: a callable of the model's output and the target, both (N, C, H, W) in [0, 1], that
                returns a scalar tensor.
        """
        raise NotImplementedError(f"technique {self.name!r} does not provide the loss")

    def wrap_loss(self, loss: Loss, ctx: CellContext) -> Loss:
        """Wrap the loss another technique provided: return a loss that calls ``loss``.

        Args:
            loss: The loss another technique provided (or wrapped before this one).
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            A loss that calls ``loss`` (one that never calls it is refused: that loss would be dropped),
                called as ``loss(output, target)`` and returning a scalar tensor.
        """
        raise NotImplementedError(f"technique {self.name!r} does not wrap the loss")

    def build_schedule(self, ctx: CellContext) -> Schedule:
        """Provide the schedule: phases, optimizer, learning-rate curve, augmentation, batch size
        (:class:`aeframe.Schedule`; :func:`aeframe.study_schedule` is the study's).

        Args:
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            The schedule the cell trains by, as a function of progress through its budget.
        """
        raise NotImplementedError(f"technique {self.name!r} does not provide the schedule")

    def wrap_schedule(self, schedule: Schedule, ctx: CellContext) -> Schedule:
        """Wrap the schedule another technique provided (change its phases, image sizes, augmentation);
        declare learning rates in :attr:`learning_rates` instead of setting them here.

        Args:
            schedule: The schedule another technique provided (or wrapped before this one).
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            The changed schedule: ``schedule`` itself, changed, or a new one.
        """
        raise NotImplementedError(f"technique {self.name!r} does not wrap the schedule")

    def build_optimizer(self, ctx: CellContext) -> MakeOptimizer:
        """Provide the optimizer, in place of the schedule's ``make_optimizer`` (AdamW in the study's).

        Args:
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            A function of torch parameter-group dicts (``[{"params": [...], "lr": rate}, ...]``: one per group
                of the phase, each with its peak rate) that returns a new ``torch.optim.Optimizer``. It is
                called when each phase that wants a fresh optimizer begins. The schedule sets every group's
                ``lr`` at each step; Adam's beta1 too where the optimizer has ``betas``, otherwise nothing
                else. Declare the rates the optimizer wants in :attr:`learning_rates` (a
                :class:`RelativeRate` for "ten times the study's").
        """
        raise NotImplementedError(f"technique {self.name!r} does not provide the optimizer")

    def wrap_optimizer(self, make_optimizer: MakeOptimizer, ctx: CellContext) -> MakeOptimizer:
        """Wrap the optimizer another technique (or the schedule) provides: return a function that calls
        ``make_optimizer`` and changes, or wraps, what it returns.

        Args:
            make_optimizer: The function that builds the optimizer from parameter-group dicts.
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            A function of parameter-group dicts that returns a ``torch.optim.Optimizer``.
        """
        raise NotImplementedError(f"technique {self.name!r} does not wrap the optimizer")

    def build_lr_curve(self, ctx: CellContext) -> LrCurve:
        """Provide the shape of the learning-rate curve within each phase, in place of the schedule's own
        (one-cycle in the study's), keeping the phases and their peak rates: so a cosine combines with
        techniques that declare phases or rates.

        Args:
            ctx: What is known about the cell being built, with this technique's own parameters.

        Returns:
            An :class:`aeframe.LrCurve`: the rate at phase progress ``q`` for a peak rate, and beta1 at ``q``
                (None: the optimizer's own beta1, unchanged).
        """
        raise NotImplementedError(f"technique {self.name!r} does not provide the learning-rate curve")

    # Training events (aeframe.contract.events): each does nothing unless a technique defines it.

    def on_train_start(self, state: TrainingState) -> None:
        """Called once before the first training step (set up what the other events use).

        Args:
            state: The training in progress; ``state.optimizer`` is None (no phase has begun).
        """

    def on_phase_start(self, state: TrainingState) -> None:
        """Called when a phase of the schedule begins, after its optimizer is made (or kept).

        Args:
            state: The training in progress, at the phase's first step.
        """

    def on_after_backward(self, state: TrainingState) -> None:
        """Called in every training step after the backward pass, before the optimizer's step: gradients
        are in each parameter's ``.grad``, unscaled under fp16 (clip them, add noise, measure them).

        Args:
            state: The training in progress; ``state.step`` steps were taken before this one.
        """

    def on_after_step(self, state: TrainingState) -> None:
        """Called in every training step after the optimizer's step (update an average of the weights).

        Args:
            state: The training in progress; ``state.step`` counts this step.
        """

    def on_epoch_end(self, state: TrainingState) -> None:
        """Called after each epoch's last step, before its evaluation (record a diagnostic once an epoch).

        Args:
            state: The training in progress; ``state.epoch`` counts this epoch.
        """

    def on_phase_end(self, state: TrainingState) -> None:
        """Called when a phase ends: before the next one begins, or before training ends.

        Args:
            state: The training in progress, at the phase's last step.
        """

    def on_train_end(self, state: TrainingState) -> None:
        """Called once after the last step (and its phase's end), before the final evaluation.

        Args:
            state: The training in progress, at its end.
        """

    def around_evaluation(self, state: TrainingState) -> Iterator[None]:
        """A generator around every evaluation of the model (each epoch's test loss, the final metrics, the
        pictures): what runs before its ``yield`` runs before the evaluation, what runs after it once the
        evaluation is done. Evaluate with other weights (an average), then put the live ones back.

        Args:
            state: The training in progress.

        Yields:
            Once, while the evaluation runs.
        """
        yield

    def acts_on(self, event: str) -> bool:
        """Whether this technique defines the event method ``event`` (e.g. ``"on_after_step"``).

        Args:
            event: One of the event methods of :mod:`aeframe.contract.events`.

        Returns:
            True when this technique defines it itself, rather than leaving it as declared.
        """
        return self._defines(event)

    def events(self) -> tuple[str, ...]:
        """The event methods this technique defines.

        Returns:
            Their names, in the order they happen in a training run.
        """
        return tuple(e for e in EVENT_METHODS if self._defines(e))

    def provides(self, part: str) -> bool:
        """Whether this technique builds ``part`` ("model", "loss" or "schedule").

        Args:
            part: The part: "model", "loss", "schedule", "optimizer" or "lr_curve".

        Returns:
            True when this technique defines ``build_<part>`` itself, rather than leaving it as declared.
        """
        return self._defines(f"build_{part}")

    def wraps(self, part: str) -> bool:
        """Whether this technique wraps ``part`` built by another.

        Args:
            part: The part: "model", "loss", "schedule" or "optimizer".

        Returns:
            True when this technique defines ``wrap_<part>`` itself, rather than leaving it as declared.
        """
        return self._defines(f"wrap_{part}")

    def checks_model(self) -> bool:
        """Whether this technique defines :meth:`check_model`, so that planning builds the model to check.

        Returns:
            True when it does.
        """
        return self._defines("check_model")

    def _defines(self, method: str) -> bool:
        """Whether this technique defines ``method`` itself: in its class (or a class between it and
        ``Technique``) or on the instance, rather than leaving it as declared."""
        found = vars(self).get(method, getattr(type(self), method, None))
        return callable(found) and found is not getattr(Technique, method)

    def accepted_params(self) -> tuple[Param, ...]:
        """Every parameter ``-t name[...]`` accepts: :attr:`params`, and ``lr`` when rates are declared.

        Returns:
            The declared :attr:`params` in order, followed by the string parameter ``lr`` (default "own") when
                :attr:`learning_rates` declares any rate.
        """
        if not self.learning_rates:
            return tuple(self.params)
        phases = ", ".join(repr(p) for p in self.learning_rates)
        return (*self.params, Param(
            LR_PARAM, str, OWN_RATE,
            f"peak learning rate of phase {phases} for this row: {OWN_RATE} (this technique's declared "
            "rate) or a number such as 3e-4; settles a combination of techniques that both declare one",
        ))
