"""MISA AMIS Kế toán connector: voucher requests and master data out, dictionaries and stock in."""
from .callbacks import CallbackError, handle_callback, parse_callback
from .connector import MisaConnector
from .ids import org_refid

__all__ = ["MisaConnector", "parse_callback", "handle_callback", "CallbackError", "org_refid"]
