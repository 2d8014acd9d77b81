import factory

from chats import services
from chats.models import Conversation, Message, User

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password(PASSWORD)


def make_conversation(*users: User, messages: tuple[str, ...] = ()) -> Conversation:
    """A conversation opened by users[0] with the others, through the real service."""
    creator, *others = users
    conversation, _ = services.conversation_create(
        creator=creator, participant_ids=[u.pk for u in others], message_bodies=list(messages)
    )
    return conversation


def send(conversation: Conversation, sender: User, body: str = "hello", **options) -> Message:
    message, _ = services.message_send(conversation=conversation, sender=sender, message_body=body, **options)
    return message
