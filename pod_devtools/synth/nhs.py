"""Synthetic NHS numbers: valid modulus-11 numbers from the reserved 999 000 0000 test range."""

import numpy as np

# The weights of the modulus-11 check: 10 for the first digit down to 2 for the ninth.
WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)
TEST_STEMS = np.arange(999_000_000, 1_000_000_000, dtype=np.int64)  # the first nine digits


def check_digits(stems: np.ndarray) -> np.ndarray:
    """The check digit of each 9-digit stem; 10 where no valid number has that stem."""
    digits = (stems[:, None] // 10 ** np.arange(8, -1, -1, dtype=np.int64)) % 10
    check = 11 - (digits @ WEIGHTS) % 11
    return np.where(check == 11, 0, check)


def valid_test_numbers() -> np.ndarray:
    """Every valid NHS number from 999 000 0000 to 999 999 9999, ascending."""
    check = check_digits(TEST_STEMS)
    valid = check != 10
    return TEST_STEMS[valid] * 10 + check[valid]


def broken_check_digit(number: int) -> int:
    """The same number with a wrong check digit: 10 digits that fail the modulus-11 check."""
    return number - number % 10 + (number + 1) % 10


def format_numbers(numbers: np.ndarray, spaced: np.ndarray) -> np.ndarray:
    """Numbers as '9991234567' or, where `spaced`, '999 123 4567' (both allowed by the contract)."""
    plain = numbers.astype("U10")
    chars = plain.view("U1").reshape(-1, 10)
    blank = np.full((len(plain), 1), " ")
    with_spaces = np.hstack([chars[:, :3], blank, chars[:, 3:6], blank, chars[:, 6:]])
    return np.where(spaced, np.ascontiguousarray(with_spaces).view("U12").ravel(), plain)
