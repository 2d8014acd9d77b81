"""
The Django admin. Every write it offers goes through chats.services, like the API's,
so counters, unread counts, edit history and real-time events stay exact; what has
no service is read-only here. A service's refusal (a ValidationError) rolls the whole
admin request back and shows on the same form, never as a 500.
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

from chats import services
from chats.password_limits import LimitedAdminAuthenticationForm
from chats.models import (
    MESSAGE_BODY_MAX_LENGTH,
    Conversation,
    ConversationMembership,
    Message,
    MessageEdit,
    User,
)

# A login refused by the password limits is a form error (answered 429: messaging_app/urls.py).
admin.site.login_form = LimitedAdminAuthenticationForm


def _adopt(obj, saved) -> None:
    """Copy what a service stored onto the admin's unsaved instance (the admin then logs and redirects)."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False


def _error_items(refusal: ValidationError):
    if hasattr(refusal, "error_dict"):
        return [(None if field == NON_FIELD_ERRORS else field, texts) for field, texts in refusal.message_dict.items()]
    return [(None, refusal.messages)]


class DeleteEachThroughService:
    """Bulk "delete selected" calls delete_model (a service) for each row, never a queryset delete."""

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ServiceWritesAdmin(DeleteEachThroughService, admin.ModelAdmin):
    """
    save_model/save_related call services. If one raises ValidationError, the admin's
    transaction (changeform_view is atomic) rolls back everything this request did,
    and the same POST is shown again with the refusal as form errors.
    """

    # Service error keys that name a field of this admin's form by another name.
    service_error_fields: dict[str, str] = {}
    # The form of the add page, when adding means a service call with its own fields.
    add_form: type[forms.ModelForm] | None = None

    def get_inlines(self, request, obj):
        # At creation everything the service takes is a field of the add form.
        return [] if obj is None else self.inlines

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as refusal:
            if hasattr(request, "service_refusal"):
                raise
            request.service_refusal = refusal
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None and self.add_form is not None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "service_refusal", None)
        if refusal is None:
            return form
        renamed = self.service_error_fields

        class RefusedForm(form):
            def clean(self):
                cleaned = super().clean()
                for field, texts in _error_items(refusal):
                    field = renamed.get(field, field)
                    self.add_error(field if field in self.fields else None, texts)
                return cleaned

        return RefusedForm


class PasswordChangeThroughService(AdminPasswordChangeForm):
    """The admin's "change password" form, stored by the service: the user's logins end with it."""

    def save(self, commit=True):
        user = super().save(commit=False)  # the new (or unusable) password, set on the instance
        if commit:
            services.user_password_save(user=user)
        return user


@admin.register(User)
class UserAdmin(DeleteEachThroughService, DjangoUserAdmin):
    change_password_form = PasswordChangeThroughService
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "role", "is_active", "is_staff", "created_at"]
    list_filter = ["role", "is_active", "is_staff", "created_at"]
    search_fields = ["email", "first_name", "last_name", "phone_number"]
    readonly_fields = ["user_id", "created_at", "last_login"]
    fieldsets = [
        (None, {"fields": ["user_id", "email", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name", "phone_number"]}),
        ("Permissions", {"fields": ["role", "is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["created_at", "last_login"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "first_name", "last_name", "password1", "password2"]}),
    ]

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Sent messages are never deleted with a user (PROTECT): they are listed as protected,
        # which is the refusal; "no permission to delete messages" would hide the reason.
        perms_needed.discard(Message._meta.verbose_name)
        if protected:
            messages.error(
                request,
                "Someone who sent messages cannot be deleted (the messages stay in their conversations): "
                "deactivate the account instead (untick Active on its page).",
            )
        return deleted, counts, perms_needed, protected

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data:
            # Deactivating closes the account's open sockets (after commit).
            services.user_set_active(user=obj, is_active=obj.is_active)

    def delete_model(self, request, obj):
        # Sent messages are PROTECTed, so the confirmation page has already refused those users.
        services.user_delete(user=obj)


class MembershipForm(forms.ModelForm):
    class Meta:
        model = ConversationMembership
        fields = ["conversation", "user"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        if not user.is_active:
            raise ValidationError("This account is deactivated: it cannot join a conversation.")
        return user


class MembershipInline(admin.TabularInline):
    """Existing members are read-only; adding a row and ticking "delete" go through the participant services."""

    model = ConversationMembership
    form = MembershipForm
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "joined_at", "last_read_at", "unread_count"]
    readonly_fields = ["joined_at", "last_read_at", "unread_count"]

    def has_change_permission(self, request, obj=None):
        # A membership cannot be moved to another person, nor its read state set by hand.
        return False


class ConversationAddForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        User.objects.filter(is_active=True),
        label="Participants",
        error_messages={"invalid_choice": "Not an active user: %(value)s."},
        help_text="Besides the creator, who always takes part.",
        widget=AutocompleteSelectMultiple(Conversation._meta.get_field("participants"), admin.site),
    )
    first_message = forms.CharField(
        required=False,
        max_length=MESSAGE_BODY_MAX_LENGTH,
        widget=forms.Textarea,
        help_text="Optional: sent by the creator.",
    )

    class Meta:
        model = Conversation
        fields = ["created_by"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["created_by"].required = True
        self.fields["created_by"].queryset = User.objects.filter(is_active=True)
        self.fields["created_by"].error_messages["invalid_choice"] = "Not an active user."


@admin.register(Conversation)
class ConversationAdmin(ServiceWritesAdmin):
    list_display = ["conversation_id", "created_by", "created_at", "last_activity_at", "message_count"]
    list_filter = ["created_at", "last_activity_at"]
    search_fields = ["conversation_id", "participants__email", "participants__first_name", "participants__last_name"]
    list_select_related = ["created_by"]
    autocomplete_fields = ["created_by"]
    inlines = [MembershipInline]
    service_error_fields = {"participants": "members", "messages": "first_message"}
    add_form = ConversationAddForm
    add_fieldsets = [(None, {"fields": ["created_by", "members", "first_message"]})]
    change_fields = ["conversation_id", "created_by", "created_at", "message_count", "last_message", "last_activity_at"]

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else [(None, {"fields": self.change_fields})]

    def get_readonly_fields(self, request, obj=None):
        # Nothing of a conversation itself is edited by hand: its counters belong to the services.
        return [] if obj is None else self.change_fields

    def save_model(self, request, obj, form, change):
        if change:
            return  # every field is read-only
        first = form.cleaned_data["first_message"]
        conversation, created = services.conversation_create(
            creator=form.cleaned_data["created_by"],
            participant_ids=[user.pk for user in form.cleaned_data["members"]],
            message_bodies=[first] if first else [],
        )
        if not created:
            request.existing_conversation = True
            messages.warning(
                request,
                "These two people already share an unchanged two-person conversation: it is shown instead"
                + (" (the message was added to it)." if first else "."),
            )
        _adopt(obj, conversation)

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(request, "existing_conversation", False):
            return HttpResponseRedirect(reverse("admin:chats_conversation_change", args=[obj.pk]))
        return super().response_add(request, obj, post_url_continue)

    def save_formset(self, request, form, formset, change):
        formset.save(commit=False)  # collects new and deleted rows without writing them
        conversation = form.instance
        for membership in formset.deleted_objects:
            services.conversation_remove_participant(
                conversation=conversation, actor=membership.user, user_id=membership.user_id
            )
        for membership in formset.new_objects:
            services.conversation_add_participant(
                conversation=conversation, actor=None, user_id=membership.user_id
            )

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The messages go with their conversation (conversation_delete); the message admin's
        # refusal concerns deleting single rows out of a timeline.
        perms_needed -= {Message._meta.verbose_name, MessageEdit._meta.verbose_name}
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        services.conversation_delete(conversation=obj)


@admin.register(ConversationMembership)
class ConversationMembershipAdmin(ServiceWritesAdmin):
    """Add = conversation_add_participant, delete = the member leaving; a membership is never edited."""

    form = MembershipForm
    service_error_fields = {"user_id": "user"}
    list_display = ["conversation", "user", "joined_at", "last_read_at", "unread_count"]
    list_filter = ["joined_at"]
    search_fields = ["user__email", "conversation__conversation_id"]
    list_select_related = ["user", "conversation"]
    autocomplete_fields = ["user", "conversation"]

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        services.conversation_add_participant(
            conversation=obj.conversation, actor=None, user_id=obj.user_id
        )
        _adopt(obj, ConversationMembership.objects.get(conversation=obj.conversation, user=obj.user))

    def delete_model(self, request, obj):
        services.conversation_remove_participant(conversation=obj.conversation, actor=obj.user, user_id=obj.user_id)


class MessageEditInline(admin.TabularInline):
    model = MessageEdit
    extra = 0
    fields = readonly_fields = ["message_body", "replaced_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MessageAddForm(forms.ModelForm):
    class Meta:
        model = Message
        fields = ["conversation", "sender", "message_body", "parent_message"]

    def clean(self):
        cleaned = super().clean()
        conversation, sender = cleaned.get("conversation"), cleaned.get("sender")
        if conversation and sender:
            if not sender.is_active:
                self.add_error("sender", "This account is deactivated: it cannot send messages.")
            elif not ConversationMembership.objects.filter(conversation=conversation, user=sender).exists():
                self.add_error("sender", "The sender must be a participant of this conversation.")
        return cleaned


@admin.register(Message)
class MessageAdmin(ServiceWritesAdmin):
    """
    Add = message_send (as a participant), a body change = message_edit (history kept),
    delete = the "tombstone" action (message_delete). Rows are never removed.
    """

    list_display = ["message_id", "conversation", "sender", "short_body", "sent_at", "edited_at", "is_deleted"]
    list_filter = ["sent_at", "is_deleted"]
    search_fields = ["message_body", "sender__email", "conversation__conversation_id"]
    list_select_related = ["sender", "conversation"]
    autocomplete_fields = ["sender", "conversation", "parent_message"]
    date_hierarchy = "sent_at"
    inlines = [MessageEditInline]
    add_form = MessageAddForm
    actions = ["tombstone"]
    change_fields = [
        "message_id", "conversation", "sender", "message_body", "sent_at", "edited_at", "is_deleted",
        "parent_message", "client_id",
    ]

    @admin.display(description="message")
    def short_body(self, obj: Message) -> str:
        return obj.message_body[:60]

    def get_fields(self, request, obj=None):
        return MessageAddForm.Meta.fields if obj is None else self.change_fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Only the text of a live message changes (message_edit); a message never moves.
        return [name for name in self.change_fields if name != "message_body" or obj.is_deleted]

    def has_delete_permission(self, request, obj=None):
        # Deleting rows would break the conversation's counts and the timeline: the
        # tombstone action deletes the way the API does.
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            message, _ = services.message_send(
                conversation=obj.conversation,
                sender=obj.sender,
                message_body=obj.message_body,
                parent_message_id=obj.parent_message_id,
            )
            _adopt(obj, message)
        elif "message_body" in form.changed_data:
            # Staff edit on the sender's behalf: the same edit, history and event as theirs.
            _adopt(obj, services.message_edit(message=obj, actor=obj.sender, message_body=obj.message_body))

    @admin.action(description="Delete the selected messages (leave tombstones)", permissions=["change"])
    def tombstone(self, request, queryset):
        deleted = 0
        for message in queryset.select_related("conversation", "sender"):
            if not message.is_deleted:
                services.message_delete(message=message, actor=message.sender)
                deleted += 1
        self.message_user(request, f"{deleted} message(s) deleted; tombstones stay in their timelines.")


@admin.register(MessageEdit)
class MessageEditAdmin(admin.ModelAdmin):
    """Read-only: the history is written by message_edit and cleared by message_delete."""

    list_display = ["message", "replaced_at"]
    list_filter = ["replaced_at"]
    search_fields = ["message_body", "message__message_id"]
    list_select_related = ["message"]
    fields = readonly_fields = ["message", "message_body", "replaced_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
