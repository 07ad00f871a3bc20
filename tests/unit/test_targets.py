"""Choosing the class to explain: predicted, an index, a forgiving name, or one for the video."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_client.errors import InputError
from gradcam_client.jobs.targets import TargetChoice, find_class, video_class
from gradcam_client.remote.contract import PREDICTED_CLASS

NAMES = (
    "tabby",  # 0
    "tiger cat",  # 1
    "Persian cat",  # 2
    "Siamese cat",  # 3
    "Egyptian cat",  # 4
    "tiger",  # 5
    "golden retriever",  # 6
    "Labrador retriever",  # 7
    "mitten",  # 8
    "crate",  # 9
    "St. Bernard",  # 10
    "jack-o'-lantern",  # 11
)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("Siamese cat", 3),
        ("siamese-cat", 3),
        ("SIAMESE CAT", 3),
        ("  siamese_cat ", 3),
        ("siamese", 3),  # the only class with that word
        ("tiger", 5),  # an exact name wins over "tiger cat"
        ("st bernard", 10),
        ("Jack o lantern", 11),
        ("siamse cat", 3),  # one small typo, one clear candidate
        ("3", 3),
        (" 11 ", 11),
        ("0", 0),
    ],
)
def test_a_class_is_found_by_forgiving_name_or_index(query, index):
    assert find_class(query, NAMES) == index


def test_an_unknown_name_gets_close_suggestions():
    with pytest.raises(InputError) as caught:
        find_class("kitten", NAMES)
    assert str(caught.value) == "unknown class name 'kitten'; did you mean: mitten?"
    with pytest.raises(InputError, match=r"^unknown class name 'zebra'$"):
        find_class("zebra", NAMES)


def test_a_word_shared_by_several_classes_lists_them_first():
    with pytest.raises(InputError) as caught:
        find_class("cat", NAMES)
    message = str(caught.value)
    assert message.startswith(
        "ambiguous class name 'cat'; did you mean: tiger cat, Persian cat, Siamese cat, "
        "Egyptian cat"
    )
    with pytest.raises(InputError, match="golden retriever, Labrador retriever"):
        find_class("retriever", NAMES)


def test_a_name_two_classes_share_asks_for_an_index():
    names = ("crane", "tabby", "Crane")
    with pytest.raises(InputError, match=r"'crane' is ambiguous; give an index: 0 \(crane\), 2"):
        find_class("crane", names)


@pytest.mark.parametrize("query", ["12", "-1", "-5", "99999"])
def test_an_index_out_of_range_says_the_range(query):
    with pytest.raises(InputError, match=f"class index {int(query)} is out of range 0..11"):
        find_class(query, NAMES)


@pytest.mark.parametrize("text", [None, "", "  ", "predicted", "Predicted"])
def test_the_default_target_is_each_frames_prediction(text):
    choice = TargetChoice.parse(text, NAMES)
    assert choice.mode == "predicted" and not choice.needs_first_pass
    assert choice.request_value() == PREDICTED_CLASS


def test_video_and_fixed_targets():
    video = TargetChoice.parse(" Video ", NAMES)
    assert video.needs_first_pass and video.mode == "video"
    fixed = TargetChoice.parse("siamese-cat", NAMES)
    assert (fixed.mode, fixed.request_value(), fixed.needs_first_pass) == ("fixed", 3, False)
    with pytest.raises(InputError):
        TargetChoice.parse("dog", NAMES)


def test_the_video_class_has_the_highest_mean_probability():
    probabilities = np.array(
        [
            [0.6, 0.4, 0.0],  # class 0 wins two frames...
            [0.6, 0.4, 0.0],
            [0.0, 0.9, 0.1],  # ...but class 1 has the higher mean
        ]
    )
    assert video_class(probabilities) == 1
    assert video_class(probabilities[:1]) == 0
