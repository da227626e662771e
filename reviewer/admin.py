from django.contrib import admin

from .models import Decision


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ("item", "label", "reviewer", "created_at")
    list_filter = ("item__project", "label")
    readonly_fields = ("item", "label", "reviewer", "prediction", "created_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
