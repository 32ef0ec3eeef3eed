"""placeholder"""

import argparse


def init_mapping_command(args: argparse.Namespace) -> int:
    raise NotImplementedError
