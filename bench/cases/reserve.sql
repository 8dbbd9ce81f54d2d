SELECT ticket_reserve(1, 1, 'bench');
