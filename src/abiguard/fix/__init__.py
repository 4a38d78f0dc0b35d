"""Fix: plan the smallest repair, resolve it with a real installer, apply it safely and roll it back."""
