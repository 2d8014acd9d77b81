from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from chats.models import Conversation, ConversationMembership, Message, MessageEdit, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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


class MembershipInline(admin.TabularInline):
    model = ConversationMembership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at", "last_read_at"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["conversation_id", "created_by", "created_at", "last_activity_at", "message_count"]
    list_filter = ["created_at", "last_activity_at"]
    search_fields = ["conversation_id", "participants__email", "participants__first_name", "participants__last_name"]
    list_select_related = ["created_by"]
    readonly_fields = ["conversation_id", "created_at", "message_count", "last_message", "last_activity_at"]
    autocomplete_fields = ["created_by"]
    inlines = [MembershipInline]


@admin.register(ConversationMembership)
class ConversationMembershipAdmin(admin.ModelAdmin):
    list_display = ["conversation", "user", "joined_at", "last_read_at"]
    list_filter = ["joined_at"]
    search_fields = ["user__email", "conversation__conversation_id"]
    list_select_related = ["user", "conversation"]
    autocomplete_fields = ["user", "conversation"]


class MessageEditInline(admin.TabularInline):
    model = MessageEdit
    extra = 0
    readonly_fields = ["message_body", "replaced_at"]
    can_delete = False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["message_id", "conversation", "sender", "short_body", "sent_at", "edited_at", "is_deleted"]
    list_filter = ["sent_at", "is_deleted"]
    search_fields = ["message_body", "sender__email", "conversation__conversation_id"]
    list_select_related = ["sender", "conversation"]
    readonly_fields = ["message_id", "sent_at", "edited_at", "is_deleted", "parent_message", "client_id"]
    autocomplete_fields = ["sender", "conversation"]
    date_hierarchy = "sent_at"
    inlines = [MessageEditInline]

    @admin.display(description="message")
    def short_body(self, obj: Message) -> str:
        return obj.message_body[:60]

    def has_delete_permission(self, request, obj=None):
        # Deleting rows would break the conversation's denormalised counts and the
        # timeline; senders delete through the API, which leaves a tombstone.
        return False


@admin.register(MessageEdit)
class MessageEditAdmin(admin.ModelAdmin):
    list_display = ["message", "replaced_at"]
    list_filter = ["replaced_at"]
    search_fields = ["message_body", "message__message_id"]
    list_select_related = ["message"]
    readonly_fields = ["message", "message_body", "replaced_at"]
