from __future__ import annotations

import math

import numpy as np
import pytest

from lm.data import TokenArrayDataset
from lm.diagnose import diagnose, unigram_counts
from lm.trainer import TrainConfig, train

from .conftest import tiny_model


def test_unigram_and_uniform_losses_on_hand_made_data():
    # targets (columns 1..3, mask hides column 1): train has token 1 three times, 2 once
    train_ds = TokenArrayDataset(np.array([[0, 3, 1, 1], [0, 3, 1, 2]]), 4,
                                 loss_mask=np.array([False, False, True, True]))
    assert unigram_counts(train_ds).tolist() == [0, 3, 1, 0]
    val_ds = TokenArrayDataset(np.array([[0, 0, 1, 2]]), 4,
                               loss_mask=np.array([False, False, True, True]))
    d = diagnose(tiny_model(vocab_size=4), train_ds, val_ds, autocast="off")
    p = np.array([1, 4, 2, 1]) / 8  # add-one smoothing
    assert d.unigram_loss == pytest.approx(-(math.log(p[1]) + math.log(p[2])) / 2)
    assert d.uniform_loss == pytest.approx(math.log(4))
    assert not d.learned  # an untrained model is at about ln(4) > unigram


def test_a_model_that_learned_the_task_is_flagged(counting):
    train_ds, val_ds = counting
    model = tiny_model()
    before = diagnose(model, train_ds, val_ds, autocast="off")
    train(model, train_ds, val_ds, TrainConfig(total_tokens=16_000, batch_size=16, lr=1e-2,
                                               eval_every_tokens=16_000, autocast="off"))
    after = diagnose(model, train_ds, val_ds, autocast="off")
    assert not before.learned and after.learned
    assert after.accuracy > 0.9 and after.val_loss < 0.5 * after.unigram_loss
    assert set(after.as_dict()) == {"val_loss", "unigram_loss", "uniform_loss", "accuracy",
                                    "learned"}


def test_frequencies_alone_are_not_learning():
    # i.i.d. tokens: nothing beyond the unigram to learn
    rng = np.random.default_rng(0)
    probs = np.array([0.5, 0.3, 0.1, 0.1])
    train_ds = TokenArrayDataset(rng.choice(4, size=(256, 33), p=probs), 4)
    val_ds = TokenArrayDataset(rng.choice(4, size=(32, 33), p=probs), 4)
    model = tiny_model(vocab_size=4)
    train(model, train_ds, val_ds, TrainConfig(total_tokens=30_000, batch_size=16, lr=3e-3,
                                               eval_every_tokens=30_000, autocast="off"))
    d = diagnose(model, train_ds, val_ds, autocast="off")
    assert abs(d.val_loss - d.unigram_loss) < 0.05 and not d.learned
