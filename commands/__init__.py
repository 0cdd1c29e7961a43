"""Write-side handlers: validate raw input, decide events with the domain, append them."""
