"""The rig's side doors: its MQTT bus (pairing, durable inbox, publishing) and watched folders.

Both hand holes to the same services as `POST /holes`; neither opens the store on its own.
"""
