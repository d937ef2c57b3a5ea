from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and teams"

    def ready(self):
        from django.contrib.auth import signals

        from . import signals as receivers

        signals.user_logged_in.connect(receivers.on_user_logged_in, dispatch_uid="accounts-audit-login")
        signals.user_logged_out.connect(receivers.on_user_logged_out, dispatch_uid="accounts-audit-logout")
        signals.user_login_failed.connect(receivers.on_user_login_failed, dispatch_uid="accounts-audit-login-failed")
