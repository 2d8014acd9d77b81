from django.urls import path

from attachments import views

urlpatterns = [
    path("", views.AttachmentUploadView.as_view(), name="attachment-upload"),
    path("<str:attachment_id>/", views.AttachmentDetailView.as_view(), name="attachment-detail"),
    path("<str:attachment_id>/download/", views.AttachmentDownloadView.as_view(), name="attachment-download"),
    path("<str:attachment_id>/thumbnail/", views.AttachmentThumbnailView.as_view(), name="attachment-thumbnail"),
]
