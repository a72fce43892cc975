"""The admin API and admin page: endpoints, subscriptions, delivery status, dead letters, audit."""
