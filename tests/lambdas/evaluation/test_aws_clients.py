"""LazyClient: the client a constructor was given, else one boto3 client made on first use and kept."""

from evaluation.aws_clients import LazyClient


class Holder:
    sqs = LazyClient("sqs")

    def __init__(self, sqs_client=None):
        self._sqs = sqs_client


def test_a_given_client_is_used_as_it_is():
    given = object()
    assert Holder(given).sqs is given


def test_without_one_a_client_of_the_named_service_is_made_once_and_kept():
    holder = Holder()
    first = holder.sqs
    assert first.meta.service_model.service_name == "sqs"
    assert holder.sqs is first and holder._sqs is first
    assert Holder().sqs is not first  # one per instance, as the constructor's argument is
